package checkpoints

import "github.com/tune-dev/tune/internal/dtype"

// rank is the position of each dtype in the Python library's Dtype enum
// (increasing alignment); SortLikeSafetensors orders by it.
func rank(d dtype.DType) int {
	switch d {
	case dtype.BOOL:
		return 0
	case dtype.F4:
		return 1
	case dtype.F6_E2M3:
		return 2
	case dtype.F6_E3M2:
		return 3
	case dtype.U8:
		return 4
	case dtype.I8:
		return 5
	case dtype.F8_E5M2:
		return 6
	case dtype.F8_E4M3:
		return 7
	case dtype.F8_E8M0:
		return 8
	case dtype.F8_E4M3FNUZ:
		return 9
	case dtype.F8_E5M2FNUZ:
		return 10
	case dtype.I16:
		return 11
	case dtype.U16:
		return 12
	case dtype.F16:
		return 13
	case dtype.BF16:
		return 14
	case dtype.I32:
		return 15
	case dtype.U32:
		return 16
	case dtype.F32:
		return 17
	case dtype.C64:
		return 18
	case dtype.F64:
		return 19
	case dtype.I64:
		return 20
	case dtype.U64:
		return 21
	}
	return -1
}
