package datasets

// maxLine bounds one JSONL record; a longer line is an error, not an allocation.
const maxLine = 64 << 20

// Example is one tokenized training or evaluation example. Labels has the
// length of IDs; -100 marks a token that is not predicted. nil Labels means
// every token is predicted.
type Example struct {
	IDs    []int32
	Labels []int32
}
