// Package embeddednats runs a real NATS server with JetStream inside the
// process, for development (the demo, `NATS_EMBEDDED=true`) and tests.
// Production deployments use an external NATS cluster.
package embeddednats

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server. Zero values mean: loopback, random port.
type Options struct {
	Host     string
	Port     int // 0 picks a free port
	StoreDir string
	Logs     bool
}

// Start starts the server and waits until it accepts connections.
// Shut it down with s.Shutdown(); s.WaitForShutdown().
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS needs a JetStream store directory")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "customdata-embedded",
		Host:       o.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      !o.Logs,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded NATS not ready within 10s")
	}
	return s, nil
}
