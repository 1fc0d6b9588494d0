package worker_test

import (
	"fmt"

	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
)

// An embedding program names every setting with worker's own types:
// Streams, ProvisionMode and the Checks it serves (here only listed).
func ExampleNew() {
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		panic(err)
	}
	w, err := worker.New(worker.Config{
		MongoURI: "mongodb://127.0.0.1:27017/?replicaSet=rs0",
		NATS:     worker.NATSConfig{URL: "nats://127.0.0.1:4222", Name: "my-service"},
		Streams:  worker.Streams{Mode: worker.ProvisionVerify, Replicas: 3},
		Notices:  true,
		Triggers: set,
	})
	if err != nil {
		panic(err)
	}
	var checks []worker.Check = w.Checks()
	for _, c := range checks {
		fmt.Println(c.Name)
	}
	// Output:
	// startup
	// auth-consumer
	// collection
	// notifier
}
