// Package layout holds no code: its tests read the package graph (go list) and
// fail when it stops running one way, so the rules of README's layout section
// are checked rather than hoped for.
package layout
