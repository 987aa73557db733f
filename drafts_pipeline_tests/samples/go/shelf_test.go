package shelf

import "testing"

func TestNew(t *testing.T) {
	New("x")
}
