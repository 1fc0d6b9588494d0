package provision

import "testing"

func TestValidate(t *testing.T) {
	for mode, ok := range map[Mode]bool{Create: true, Verify: true, "": false, "maybe": false, "CREATE": false} {
		if err := Validate(mode); (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", mode, err, ok)
		}
	}
}

func TestStreams(t *testing.T) {
	var s Streams
	s.SetDefaults()
	if s != (Streams{Mode: Create, Replicas: 1, DuplicateWindow: DefaultDuplicateWindow}) {
		t.Fatalf("defaults = %+v", s)
	}
	for _, tc := range []struct {
		name string
		s    Streams
		ok   bool
	}{
		{"zero", Streams{}, true},
		{"verify, 3 replicas", Streams{Mode: Verify, Replicas: 3}, true},
		{"bad mode", Streams{Mode: "maybe"}, false},
		{"too many replicas", Streams{Replicas: 7}, false},
		{"negative window", Streams{DuplicateWindow: -1}, false},
	} {
		if err := tc.s.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"AUTH_EVENTS", true}, {"customdata-worker", true},
		{"", false}, {"A.B", false}, {"A*", false}, {"A>", false},
		{"A/B", false}, {`A\B`, false}, {"A B", false}, {"A\tB", false}, {"A\nB", false},
	} {
		if err := ValidateName("stream", tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
