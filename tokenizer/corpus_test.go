package tokenizer

import (
	"math/rand/v2"
	"strings"
)

// hardCases are hand-written strings that have broken tokenizers before:
// whitespace runs, code, contractions, digit grouping, scripts, emoji and
// added tokens written inside text.
var hardCases = []string{
	"",
	" ",
	"  ",
	"\t",
	"\n",
	"\n\n\n",
	" \n \n",
	"\r\n",
	"line one\r\nline two\r\n\r\n",
	"   leading spaces",
	"trailing spaces   ",
	"  both  ",
	"a  b   c    d     e",
	"tab\tseparated\tvalues\t\t",
	"Hello world",
	"Hello, world! How are you?",
	"hello",
	" hello",
	"HELLO WORLD",
	"I'm sure it's what they've said: we'll, you'd, they're, don't",
	"I'M SURE IT'S WHAT THEY'VE SAID: WE'LL, YOU'D, THEY'RE, DON'T",
	"'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
	"Mixed 'Re 'rE 'Ll 'lL cases",
	"rock'n'roll o'clock y'all",
	"1",
	"12",
	"123",
	"1234",
	"12345",
	"123456",
	"1234567",
	"12345678901234567890",
	"3.14159 2.71828 1e10 -42 +7 0x1F 1_000_000",
	"Phone: +1 (555) 123-4567, year 2024, 10,000,000.00 USD",
	"v1.2.3-rc.4+build.5",
	"func main() {\n\tfmt.Println(\"hello\")\n}\n",
	"package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc f(x int) (int, error) {\n\tif x < 0 {\n\t\treturn 0, fmt.Errorf(\"negative: %d\", x)\n\t}\n\treturn x * 2, nil\n}\n",
	"def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint([fib(i) for i in range(10)])\n",
	"class Foo:\n    def __init__(self, x: int = 0) -> None:\n        self._x = x  # comment\n\n    @property\n    def x(self):\n        return self._x\n",
	"const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);\nif (x === null || y !== undefined) { return; }\n",
	"fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
	"#include <stdio.h>\nint main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n",
	"    indented with four\n        and eight\n\t\tand two tabs\n",
	"x = {'a': [1, 2, 3], \"b\": None}\n",
	"if(a&&b||!c){x+=1;y-=2;z*=3;w/=4;}",
	"<div class=\"x\">Hello &amp; bye</div>",
	"https://example.com/path?q=1&r=two#frag",
	"user@example.com",
	"C:\\Users\\name\\file.txt",
	"...!!!???,,,;;;:::---___===+++",
	"\"quoted\" 'single' `back`",
	"naïve café résumé coöperate façade",
	"Ünïcödé Ελληνικά Русский язык Українська",
	"e\u0301 a\u0300 o\u0308 n\u0303 (combining marks)",
	"\u0915\u094d\u0937 \u0939\u093f\u0928\u094d\u0926\u0940 देवनागरी",
	"日本語のテキストです。漢字とひらがなとカタカナ。",
	"中文文本，包含标点符号。你好世界！",
	"한국어 텍스트입니다",
	"العربية نص تجريبي مع أرقام ١٢٣",
	"עברית טקסט",
	"ไทย ภาษา",
	"emoji 😀😃😄 👍🏽 ❤️ ✨",
	"family 👨\u200d👩\u200d👧\u200d👦 and 🏳️\u200d🌈",
	"flags 🇺🇸🇫🇷🇯🇵🇩🇪",
	"keycap 1️⃣ #️⃣",
	"math ∑ ∫ √ ∞ ≠ ≤ ≥ π α β γ",
	"arrows ← → ↑ ↓ ⇒",
	"currency $ € £ ¥ ₹ ₿",
	"nbsp\u00a0here thin\u2009space ideographic\u3000space",
	"zero\u200bwidth",
	"▁already▁has▁metaspace",
	"<s>",
	"</s>",
	"<unk>",
	"<s>hello</s>",
	"<s> hello </s>",
	"text <s> in the middle </s> of text",
	"<|begin_of_text|>",
	"<|begin_of_text|>Hello<|end_of_text|>",
	"<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
	"<|im_start|>user\nhi<|im_end|>",
	"<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
	"<|endoftext|>",
	"a<|endoftext|>b",
	"<think>\nreasoning\n</think>\n\nanswer",
	"<｜begin▁of▁sentence｜>hello<｜end▁of▁sentence｜>",
	"<|im_start|><|im_end|><|im_start|>",
	"<|im_start",
	"<|begin_of_text",
	"<0x0A>",
	"\x00\x01\x02 control \x7f",
	"\u00ad soft hyphen",
}

// Fragments the generator strings together.
var (
	genWords = []string{
		"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "World",
		"tokenizer", "fine-tuning", "LoRA", "gradient", "API", "JSON", "isn't", "we're",
		"it's", "I'll", "they'd", "you've", "I'm", "CAN'T", "HE'S", "x", "y", "z", "foo", "bar",
		"α", "βeta", "Привет", "мир", "こんにちは", "世界", "안녕", "مرحبا", "שלום", "नमस्ते",
		"naïve", "Straße", "ﬁnance", "Ωmega", "e\u0301", "ü", "ø", "ñ",
	}
	genPunct = []string{
		".", ",", "!", "?", ":", ";", "'", "\"", "(", ")", "[", "]", "{", "}", "<", ">",
		"/", "\\", "-", "_", "=", "+", "*", "&", "^", "%", "$", "#", "@", "~", "`", "|",
		"...", "--", "==", "!=", "=>", "->", "::", "//", "/*", "*/", "'s", "'T", "'ll",
	}
	genSpace = []string{
		" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\t\t", "    ",
		"\u00a0", "\u3000",
	}
	genSymbols = []string{
		"😀", "👍", "👍🏽", "❤️", "🚀", "🇺🇸", "👨\u200d💻", "✓", "★", "→", "€", "©", "™",
		"中", "文", "日", "本", "語", "ア", "の", "한", "ع", "ا", "क", "ि", "\u0301", "\u200d",
	}
	genSpecials = []string{
		"<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>",
		"<|eot_id|>", "<think>", "</think>", "<｜begin▁of▁sentence｜>",
	}
)

// genCorpus builds n deterministic pseudo-random strings from the fragments
// above, plus digit runs of every length and a few long strings.
func genCorpus(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	var out []string
	for l := 1; l <= 25; l++ {
		var sb strings.Builder
		for i := range l {
			sb.WriteByte(byte('0' + (i*7+l)%10))
		}
		out = append(out, sb.String(), "x"+sb.String()+" ", " "+sb.String()+".")
	}
	for len(out) < n {
		var sb strings.Builder
		parts := 1 + r.IntN(30)
		for range parts {
			switch k := r.IntN(100); {
			case k < 40:
				sb.WriteString(genWords[r.IntN(len(genWords))])
			case k < 55:
				sb.WriteString(genPunct[r.IntN(len(genPunct))])
			case k < 75:
				sb.WriteString(genSpace[r.IntN(len(genSpace))])
			case k < 83:
				for range 1 + r.IntN(8) {
					sb.WriteByte(byte('0' + r.IntN(10)))
				}
			case k < 93:
				sb.WriteString(genSymbols[r.IntN(len(genSymbols))])
			case k < 96:
				sb.WriteString(genSpecials[r.IntN(len(genSpecials))])
			default:
				// A random rune from old, stable blocks (Unicode 15 vs the
				// oracle's newer tables must not matter).
				blocks := [][2]rune{{0x21, 0x7e}, {0xa1, 0x24f}, {0x370, 0x3ff}, {0x400, 0x4ff}, {0x4e00, 0x9fa5}, {0x3041, 0x3096}, {0x30a1, 0x30fa}, {0xac00, 0xd7a3}, {0x600, 0x6ff}, {0x1f600, 0x1f64f}}
				b := blocks[r.IntN(len(blocks))]
				sb.WriteRune(b[0] + rune(r.IntN(int(b[1]-b[0]+1))))
			}
		}
		out = append(out, sb.String())
	}
	// Long inputs: 2000+ runes of mixed text, code, whitespace.
	long := func(seed uint64, unit string) string {
		var sb strings.Builder
		for i := 0; sb.Len() < 6000 && len([]rune(sb.String())) < 2000; i++ {
			sb.WriteString(unit)
			sb.WriteString(genWords[int(seed+uint64(i))%len(genWords)])
		}
		return string([]rune(sb.String())[:2000])
	}
	out = append(out,
		long(1, " "),
		long(2, "\n    "),
		long(3, ", 12345 "),
		strings.Repeat(" ", 2000),
		strings.Repeat("\n", 2000),
		strings.Repeat("a", 2000),
		strings.Repeat("ab ", 700),
		strings.Repeat("😀", 2000),
		strings.Repeat("9", 2000),
	)
	return out
}

// corpus is everything the conformance test sends to the oracle.
func corpus() []string {
	return append(append([]string{}, hardCases...), genCorpus(400)...)
}
