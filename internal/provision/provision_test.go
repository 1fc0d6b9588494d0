package provision

import "testing"

func TestValidate(t *testing.T) {
	for mode, ok := range map[Mode]bool{Create: true, Verify: true, "": false, "maybe": false, "CREATE": false} {
		if err := Validate(mode); (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", mode, err, ok)
		}
	}
}
