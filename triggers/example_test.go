package triggers_test

import (
	"fmt"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// A Go handler runs beside the built-ins: here, every login through
// Google records the provider, after the lastLogin built-in.
func ExampleSet_Register() {
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	err = set.Register("google-provider", triggers.On(events.OperationLogin).WithProviders("oauth2-google"),
		triggers.HandlerFunc(func(ev events.AuthEvent) ([]triggers.Write, error) {
			return []triggers.Write{{UserID: ev.User.ID, Set: map[string]any{"provider": "google"}}}, nil
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	writes, err := set.Decide(events.NewAuthEvent(events.OperationLogin, "user-42", "oauth2-google"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range writes {
		fmt.Println(w.UserID, "set:", w.Set, "max fields:", len(w.Max))
	}
	// Output:
	// user-42 set: map[] max fields: 1
	// user-42 set: map[provider:google] max fields: 0
}
