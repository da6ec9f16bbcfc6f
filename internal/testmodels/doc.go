// Package testmodels holds what tests share to check tune against PyTorch: the
// model variants the forward pass must match (Variants), the runner of the
// independent reference.py (os/exec of Debian's python3-torch), and a graph
// runner. Only tests import it; model/builtin writes the model directories.
package testmodels
