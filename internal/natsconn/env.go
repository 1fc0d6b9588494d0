package natsconn

// Env is how a binary reads Config from its environment (envconfig):
// embedded in the binary's settings, it gives <PREFIX>_NATS_URL,
// <PREFIX>_NATS_USER, … with one meaning and one description in every
// binary.
type Env struct {
	NATSURL          string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	NATSUser         string `envconfig:"NATS_USER" desc:"NATS user (with NATS_PASSWORD)"`
	NATSPassword     string `envconfig:"NATS_PASSWORD" desc:"NATS password (never logged)"`
	NATSToken        string `envconfig:"NATS_TOKEN" desc:"NATS token (never logged)"`
	NATSNKeySeedFile string `envconfig:"NATS_NKEY_SEED_FILE" desc:"path to an nkey seed file"`
	NATSCredsFile    string `envconfig:"NATS_CREDS_FILE" desc:"path to a NATS .creds file (JWT + seed)"`
	NATSTLSCA        string `envconfig:"NATS_TLS_CA" desc:"CA bundle to verify NATS servers"`
	NATSTLSCert      string `envconfig:"NATS_TLS_CERT" desc:"client certificate for NATS mTLS"`
	NATSTLSKey       string `envconfig:"NATS_TLS_KEY" desc:"client key for NATS mTLS"`
	NATSInboxPrefix  string `envconfig:"NATS_INBOX_PREFIX" desc:"prefix of this client's reply subjects instead of _INBOX (deploy/nats/nats.conf: _INBOX_<its NATS user>)"`
}

// Config is the connection these settings describe, for a client named
// name.
func (e Env) Config(name string) Config {
	return Config{URL: e.NATSURL, Name: name, User: e.NATSUser, Password: e.NATSPassword, Token: e.NATSToken,
		NKeySeedFile: e.NATSNKeySeedFile, CredsFile: e.NATSCredsFile,
		TLSCAFile: e.NATSTLSCA, TLSCertFile: e.NATSTLSCert, TLSKeyFile: e.NATSTLSKey, InboxPrefix: e.NATSInboxPrefix}
}
