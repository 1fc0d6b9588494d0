package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfigValidation(t *testing.T) {
	const secret = "v1,whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
	const clerk = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
	cases := []struct {
		name string
		env  map[string]string
		err  string // "" for valid
	}{
		{name: "Supabase only", env: map[string]string{"SUPABASE_HOOK_SECRETS": secret}},
		{name: "Hydra only, no NATS needed without cache", env: map[string]string{"HYDRA_API_KEYS": "k", "CACHE_MAX_ENTRIES": "0", "NATS_URL": ""}},
		{name: "no endpoint", env: nil, err: "no endpoint enabled"},
		{name: "bad secret", env: map[string]string{"SUPABASE_HOOK_SECRETS": "whsec-nope"}, err: "SUPABASE_HOOK_SECRETS: webhook: secret 1 of 1"},
		{name: "logins without Supabase", env: map[string]string{"API_TOKENS": "t", "SUPABASE_PUBLISH_LOGINS": "true"}, err: "needs the Supabase hook"},
		{name: "Hydra logins without Hydra", env: map[string]string{"API_TOKENS": "t", "HYDRA_PUBLISH_LOGINS": "true"}, err: "HYDRA_PUBLISH_LOGINS needs the Hydra token hook"},
		{name: "Hydra logins", env: map[string]string{"HYDRA_API_KEYS": "k", "HYDRA_PUBLISH_LOGINS": "true"}},
		{name: "Hydra logins need NATS", env: map[string]string{"HYDRA_API_KEYS": "k", "HYDRA_PUBLISH_LOGINS": "true", "CACHE_MAX_ENTRIES": "0", "NATS_URL": ""}, err: "NATS_URL is required"},
		{name: "reserved claim", env: map[string]string{"API_TOKENS": "t", "CLAIM_NAME": "role"}, err: "CLAIM_NAME"},
		{name: "TTL-less cache without notices", env: map[string]string{"API_TOKENS": "t", "NOTICES_ENABLED": "false"}, err: "CACHE_TTL > 0"},
		{name: "NATS needed for notices", env: map[string]string{"API_TOKENS": "t", "NATS_URL": ""}, err: "NATS_URL is required"},
		{name: "zero timeout", env: map[string]string{"API_TOKENS": "t", "HOOK_TIMEOUT": "0s"}, err: "HOOK_TIMEOUT must be positive"},
		{name: "Clerk only, no MongoDB needed", env: map[string]string{"CLERK_WEBHOOK_SECRETS": clerk, "MONGODB_URI": ""}},
		{name: "Kratos by basic auth only", env: map[string]string{"KRATOS_BASIC_AUTH": "kratos:c2VjcmV0"}},
		{name: "Auth0 only", env: map[string]string{"AUTH0_AUTHORIZATION": "Bearer c2VjcmV0"}},
		{name: "ingest needs NATS", env: map[string]string{"AUTH0_AUTHORIZATION": "Bearer c2VjcmV0", "NATS_URL": ""}, err: "NATS_URL is required"},
		{name: "hooks still need MongoDB", env: map[string]string{"CLERK_WEBHOOK_SECRETS": clerk, "API_TOKENS": "t", "MONGODB_URI": ""}, err: "MONGODB_URI is required"},
		{name: "bad Clerk secret", env: map[string]string{"CLERK_WEBHOOK_SECRETS": "c2VjcmV0"}, err: "CLERK_WEBHOOK_SECRETS: webhook: secret 1 of 1"},
		{name: "basic auth without user", env: map[string]string{"KRATOS_BASIC_AUTH": "c2VjcmV0"}, err: `KRATOS_BASIC_AUTH: a basic-auth credential must be "user:password"`},
		{name: "zero ingest timeout", env: map[string]string{"AUTH0_AUTHORIZATION": "x", "INGEST_TIMEOUT": "0s"}, err: "INGEST_TIMEOUT must be positive"},
		{name: "ingest timeout past the write timeout", env: map[string]string{"AUTH0_AUTHORIZATION": "x", "INGEST_TIMEOUT": "15s"}, err: "INGEST_TIMEOUT must be below 15s"},
		{name: "dead-letter prefix with a wildcard", env: map[string]string{"AUTH0_AUTHORIZATION": "x", "DLQ_SUBJECT_PREFIX": "auth.>"}, err: "DLQ_SUBJECT_PREFIX"},
		// A list of only blank values enables the endpoint with no secret:
		// refused at start, naming the setting, before any connection.
		{name: "blank Auth0 token", env: map[string]string{"AUTH0_AUTHORIZATION": " , "}, err: "CUSTOMDATA_BRIDGE_AUTH0_AUTHORIZATION: every value is blank"},
		{name: "blank Kratos API key", env: map[string]string{"KRATOS_API_KEYS": ","}, err: "CUSTOMDATA_BRIDGE_KRATOS_API_KEYS: every value is blank"},
		{name: "blank Kratos basic auth", env: map[string]string{"KRATOS_BASIC_AUTH": ","}, err: "CUSTOMDATA_BRIDGE_KRATOS_BASIC_AUTH: every value is blank"},
		{name: "blank Hydra API key", env: map[string]string{"HYDRA_API_KEYS": " ,"}, err: "CUSTOMDATA_BRIDGE_HYDRA_API_KEYS: every value is blank"},
		{name: "blank API token", env: map[string]string{"API_TOKENS": ","}, err: "CUSTOMDATA_BRIDGE_API_TOKENS: every value is blank"},
		{name: "leader timeout below two heartbeats", env: map[string]string{"API_TOKENS": "t", "LEADER_TIMEOUT": "5s"}, err: "LEADER_TIMEOUT must be at least 10s"},
		{name: "leader timeout off", env: map[string]string{"API_TOKENS": "t", "LEADER_TIMEOUT": "-1s"}},
		{name: "one blank among keys", env: map[string]string{"AUTH0_AUTHORIZATION": "Bearer c2VjcmV0,"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(envPrefix+"_"+k, v)
			}
			_, err := loadConfig()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("loadConfig: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("loadConfig: %v, want an error containing %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
				t.Fatalf("the error quotes a secret: %v", err)
			}
		})
	}
}

func TestEnvVerbListsEverySetting(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"env"}, &out, &errOut); code != 0 {
		t.Fatalf("env: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"CUSTOMDATA_BRIDGE_SUPABASE_HOOK_SECRETS", "CUSTOMDATA_BRIDGE_HYDRA_API_KEYS", "CUSTOMDATA_BRIDGE_API_TOKENS", "CUSTOMDATA_BRIDGE_HOOK_TIMEOUT",
		"CUSTOMDATA_BRIDGE_CLERK_WEBHOOK_SECRETS", "CUSTOMDATA_BRIDGE_KRATOS_API_KEYS", "CUSTOMDATA_BRIDGE_AUTH0_AUTHORIZATION", "CUSTOMDATA_BRIDGE_DLQ_STREAM"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("env does not list %s", want)
		}
	}
	if code := run([]string{"nope"}, &out, &errOut); code != 2 {
		t.Errorf("unknown verb: exit %d", code)
	}
}
