package jinja

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestHostileTemplatesEndWithAnError: each template would exhaust memory,
// loop for a very long time or overflow the stack without the limits; each
// must end with an error wrapping ErrLimit, having allocated a bounded
// amount, and never panic.
func TestHostileTemplatesEndWithAnError(t *testing.T) {
	lim := Limits{Steps: 2_000_000, Output: 8 << 20, Alloc: 64 << 20}
	cases := []struct{ name, src string }{
		{"huge range", `{% for x in range(100000000) %}{% endfor %}`},
		{"nested loops", `{% for x in range(4000000) %}{% for y in range(4000000) %}{% endfor %}{% endfor %}`},
		{"huge repeat", `{{ 'a' * 10000000000 }}`},
		{"repeat overflowing int", `{{ 'ab' * 9223372036854775807 }}`},
		{"recursive macro", `{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}`},
		{"list holding itself printed", `{% set l = [] %}{{ l.append(l) }}{{ l }}`},
		{"list holding itself as JSON", `{% set l = [] %}{{ l.append(l) }}{{ l | tojson }}`},
		{"list holding itself indented", `{% set l = [] %}{{ l.append(l) }}{{ l | tojson(indent=2) }}`},
		{"list holding itself compared", `{% set l = [] %}{% set m = [] %}{{ l.append(l) }}{{ m.append(m) }}{{ l == m }}`},
		{"namespace holding itself", `{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }}`},
		{"doubling string", `{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}`},
		{"doubling list joined", `{% set ns = namespace(l=['x' * 100000]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | join }}`},
		{"shared list of lists", `{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l | tojson }}`},
		{"shared list compared", `{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}`},
		{"output", `{% for i in range(1000000) %}{{ 'x' * 1000 }}{% endfor %}`},
		{"captured block", `{% set x %}{% for i in range(1000000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}`},
		{"appending", `{% set l = [] %}{% for i in range(4000000) %}{{ l.append(i) }}{% endfor %}`},
		{"indent", `{{ ('x\n' * 1000000) | indent(1000) }}`},
		{"replace", `{{ ('x' * 1000000).replace('', 'y' * 1000) }}`},
		{"replace filter", `{{ ('x' * 1000000) | replace('x', 'y' * 1000) }}`},
		{"format", `{{ ('{0}' * 1000000).format('x' * 1000) }}`},
		{"list of characters", `{{ ('x' * 100000000) | list | length }}`},
		{"loop over characters", `{% for c in 'x' * 100000000 %}{% endfor %}`},
		{"split into characters", `{{ ('x' * 100000000).split('') | length }}`},
		{"split into words", `{{ ('a ' * 50000000).split() | length }}`},
		{"deep parentheses", "{{ " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000) + " }}"},
		{"deep blocks", strings.Repeat("{% if true %}", 10000) + strings.Repeat("{% endif %}", 10000)},
		{"deep not", "{{ " + strings.Repeat("not ", 100000) + "true }}"},
		{"deep minus", "{{ " + strings.Repeat("-", 100000) + "1 }}"},
		{"long sum", "{{ " + strings.Repeat("1 + ", 100000) + "1 }}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tmpl, err := Compile(c.src)
			var out string
			if err == nil {
				out, err = tmpl.RenderLimited(map[string]any{}, lim)
			}
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("got %d bytes of output and error %v, want a limit's error", len(out), err)
			}
			// A single operation may make one value of maxValueBytes before
			// the budget sees it; growing it to that size allocates about
			// five times as much over its life (Go grows large buffers by
			// 1.25), at most twice as much at once.
			if n := after.TotalAlloc - before.TotalAlloc; n > 8*maxValueBytes {
				t.Errorf("allocated %d MiB before stopping", n>>20)
			}
		})
	}
}

// TestLimitsKeepPythonSemantics: what the patches changed outside the
// limits behaves as Jinja2 in Python does.
func TestLimitsKeepPythonSemantics(t *testing.T) {
	cases := []struct{ src, want string }{
		{`{{ 'ab' * -3 }}|{{ 'ab' * 0 }}|{{ 'ab' * 2 }}`, "||abab"},
		{`{{ [1, 2, 3][0:9999999999999:2] }}`, "[1, 3]"},
		{`{{ 'abcdef'[::-9223372036854775807] }}`, "f"},
		{`{{ 'abcdef'[-100:100] }}|{{ 'abcdef'[4:1:-1] }}|{{ [1, 2, 3][::-1] }}`, "abcdef|edc|[3, 2, 1]"},
		{`{{ [1, 2, 3][5:] }}|{{ [1, 2, 3][-1:] }}`, "[]|[3]"},
		{`{{ {'a': [1, {'b': 'x'}], 'c': []} | tojson(indent=2) }}`, "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x\"\n    }\n  ],\n  \"c\": []\n}"},
		{`{{ {'b': 1, 'a': 2} | tojson }}`, `{"b": 1, "a": 2}`},
		{`{{ 'a\nb' | indent(2, true) }}`, "  a\n  b"},
		{`{{ 'a b  c'.split() | length }}`, "3"},
	}
	for _, c := range cases {
		tmpl, err := Compile(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		out, err := tmpl.Render(nil)
		if err != nil || out != c.want {
			t.Errorf("%s = %q, %v; want %q", c.src, out, err, c.want)
		}
	}
}
