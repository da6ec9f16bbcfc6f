package safetensors

import (
	"math"
	"reflect"
	"strconv"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

func TestParseHeaderErrors(t *testing.T) {
	const f32x4 = `"dtype":"F32","shape":[4]`
	tests := []struct {
		name    string
		header  string
		dataLen int64
		want    string
	}{
		{"empty header", ``, 0, "starting with '{'"},
		{"not JSON", `{"a":`, 0, "not valid JSON"},
		{"JSON syntax error", `{"a" 1}`, 0, "not valid JSON"},
		{"not an object", `[1,2]`, 0, "starting with '{'"},
		{"leading space", ` {}`, 0, "starting with '{'"},
		{"trailing data", `{} x`, 0, "not valid JSON"},
		{"second object", `{}{}`, 0, "after top-level value (at byte 3)"},
		{"invalid UTF-8", "{\"\xff\":1}", 0, "not valid UTF-8"},
		{"duplicate tensor", `{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `duplicate key "a"`},
		{"entry not object", `{"a":5}`, 0, `tensor "a": entry must be an object`},
		{"entry is null", `{"a":null}`, 0, `tensor "a": entry must be an object`},
		{"missing dtype", `{"a":{"shape":[4],"data_offsets":[0,16]}}`, 16, `tensor "a": missing "dtype"`},
		{"missing shape", `{"a":{"dtype":"F32","data_offsets":[0,16]}}`, 16, `tensor "a": missing "shape"`},
		{"missing offsets", `{"a":{` + f32x4 + `}}`, 16, `tensor "a": missing "data_offsets"`},
		{"dtype not string", `{"a":{"dtype":5,"shape":[4],"data_offsets":[0,16]}}`, 16, `tensor "a": dtype must be a string, got 5`},
		{"unknown dtype", `{"a":{"dtype":"F33","shape":[4],"data_offsets":[0,16]}}`, 16, `tensor "a": unknown dtype "F33"`},
		{"lowercase dtype", `{"a":{"dtype":"f32","shape":[4],"data_offsets":[0,16]}}`, 16, `unknown dtype "f32"`},
		{"shape not array", `{"a":{"dtype":"F32","shape":"4","data_offsets":[0,16]}}`, 16, `tensor "a": shape must be an array`},
		{"shape null", `{"a":{"dtype":"F32","shape":null,"data_offsets":[0,16]}}`, 16, `shape must be an array`},
		{"shape string dim", `{"a":{"dtype":"F32","shape":["4"],"data_offsets":[0,16]}}`, 16, `shape[0] is "4", must be a non-negative integer`},
		{"negative dim", `{"a":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}}`, 16, `shape[1] is -2, must not be negative`},
		{"fractional dim", `{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}`, 16, `shape[0] is 4.0, must be an integer`},
		{"exponent dim", `{"a":{"dtype":"F32","shape":[4e0],"data_offsets":[0,16]}}`, 16, `must be an integer`},
		{"huge dim", `{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,16]}}`, 16, `too large`},
		{"offsets not array", `{"a":{` + f32x4 + `,"data_offsets":{"begin":0}}}`, 16, `data_offsets must be an array`},
		{"one offset", `{"a":{` + f32x4 + `,"data_offsets":[16]}}`, 16, `data_offsets must be [begin,end], got [16]`},
		{"three offsets", `{"a":{` + f32x4 + `,"data_offsets":[0,8,16]}}`, 16, `data_offsets must be [begin,end]`},
		{"negative offset", `{"a":{` + f32x4 + `,"data_offsets":[-16,0]}}`, 16, `data_offsets[0] is -16, must not be negative`},
		{"begin after end", `{"a":{` + f32x4 + `,"data_offsets":[16,0]}}`, 16, `data_offsets [16,0]: begin is after end`},
		{"end beyond data", `{"a":{` + f32x4 + `,"data_offsets":[0,16]}}`, 12, `data_offsets [0,16]: end is beyond the data section (12 bytes)`},
		{"byte count mismatch", `{"model.norm.weight":{` + f32x4 + `,"data_offsets":[0,12]}}`, 12,
			`tensor "model.norm.weight": data_offsets [0,12] hold 12 bytes, but dtype F32 shape [4] needs 16`},
		{"element overflow", `{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0, `shape [4294967296,4294967296] has too many elements`},
		{"byte overflow", `{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}`, 0, `too large`},
		{"sub-byte remainder", `{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2, `does not fill a whole number of bytes`},
		{"overlap", `{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}`, 12, `tensors "a" [0,8] and "b" [4,12] overlap`},
		{"same range", `{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, 8, `overlap`},
		{"empty tensor inside another", `{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}`, 8, `overlap`},
		{"gap between", `{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}`, 12, `bytes [4,8) between tensors "a" and "b" belong to no tensor`},
		{"gap at start", `{"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8, `bytes [0,4) before the first tensor`},
		{"trailing bytes", `{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 6, `bytes [4,6) after the last tensor "a"`},
		{"data without tensors", `{}`, 4, `bytes [0,4) in a header with no tensors`},
		{"metadata value not string", `{"__metadata__":{"format":1}}`, 0, `__metadata__ "format": value must be a string, got 1`},
		{"metadata value null", `{"__metadata__":{"format":null}}`, 0, `value must be a string`},
		{"metadata not object", `{"__metadata__":["pt"]}`, 0, `__metadata__ must be an object of strings`},
		{"metadata duplicate key", `{"__metadata__":{"k":"a","k":"b"}}`, 0, `duplicate key "k"`},
		{"negative data length", `{}`, -1, `negative data section length`},
		{"newline in name stays one line", "{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}", 0, `tensor "a\nb": unknown dtype`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, md, err := parseHeader([]byte(tt.header), tt.dataLen)
			fixture.WantErr(t, err, tt.want)
			if infos != nil || md != nil {
				t.Errorf("got results with an error: %v %v", infos, md)
			}
		})
	}
}

func TestParseHeaderValid(t *testing.T) {
	hugeDim := strconv.Itoa(math.MaxInt/2 + 1)
	tests := []struct {
		name     string
		header   string
		dataLen  int64
		want     []TensorInfo
		metadata map[string]string
	}{
		{"empty", `{}`, 0, []TensorInfo{}, nil},
		{"empty padded", `{}      `, 0, []TensorInfo{}, nil},
		{"scalar", `{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4,
			[]TensorInfo{{"s", dtype.F32, []int{}, 0, 4}}, nil},
		{"zero-sized dims", `{"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[0,0]}}`, 0,
			[]TensorInfo{{"z", dtype.BF16, []int{0, 3}, 0, 0}}, nil},
		{"zero dim hides huge dims", `{"z":{"dtype":"F64","shape":[0,` + hugeDim + `,` + hugeDim + `],"data_offsets":[0,0]}}`, 0,
			[]TensorInfo{{"z", dtype.F64, []int{0, math.MaxInt/2 + 1, math.MaxInt/2 + 1}, 0, 0}}, nil},
		{"data order, not header order", `{"b":{"dtype":"I16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}`, 12,
			[]TensorInfo{{"a", dtype.F64, []int{1}, 0, 8}, {"b", dtype.I16, []int{2}, 8, 12}}, nil},
		{"empty tensor between others", `{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, 3,
			[]TensorInfo{{"a", dtype.U8, []int{2}, 0, 2}, {"e", dtype.U8, []int{0}, 2, 2}, {"b", dtype.U8, []int{1}, 2, 3}}, nil},
		{"metadata", `{"__metadata__":{"format":"pt","x":""},"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}`, 1,
			[]TensorInfo{{"a", dtype.I8, []int{1}, 0, 1}}, map[string]string{"format": "pt", "x": ""}},
		{"null metadata", `{"__metadata__":null}`, 0, []TensorInfo{}, nil},
		{"unknown fields ignored", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":[{}]}}`, 1,
			[]TensorInfo{{"a", dtype.U8, []int{1}, 0, 1}}, nil},
		{"whitespace inside", "{ \"a\" : { \"dtype\" : \"U8\" , \"shape\" : [ 1 ] , \"data_offsets\" : [ 0 , 1 ] } }\n", 1,
			[]TensorInfo{{"a", dtype.U8, []int{1}, 0, 1}}, nil},
		{"F4 packs two per byte", `{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`, 3,
			[]TensorInfo{{"a", dtype.F4, []int{2, 3}, 0, 3}}, nil},
		{"F8 and U64", `{"a":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U64","shape":[1],"data_offsets":[3,11]}}`, 11,
			[]TensorInfo{{"a", dtype.F8_E4M3, []int{3}, 0, 3}, {"b", dtype.U64, []int{1}, 3, 11}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, md, err := parseHeader([]byte(tt.header), tt.dataLen)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(infos, tt.want) {
				t.Errorf("infos = %+v, want %+v", infos, tt.want)
			}
			if !reflect.DeepEqual(md, tt.metadata) {
				t.Errorf("metadata = %v, want %v", md, tt.metadata)
			}
		})
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		shape []int
		want  int
	}{
		{nil, 1}, {[]int{}, 1}, {[]int{3}, 3}, {[]int{2, 3, 4}, 24}, {[]int{0, 5}, 0},
		{[]int{-1, 2}, -1}, {[]int{math.MaxInt/2 + 1, 2}, -1},
	}
	for _, tt := range tests {
		if got := (Tensor{Shape: tt.shape}).NumElements(); got != tt.want {
			t.Errorf("NumElements(%v) = %d, want %d", tt.shape, got, tt.want)
		}
	}
}
