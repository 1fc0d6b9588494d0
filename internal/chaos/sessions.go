package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// sessions are the sample of users logged in at the reference issuer,
// whose tokens are refreshed all through the run while the application
// changes their documents.
type sessions struct {
	client *issuerClient
	users  []string

	mu        sync.Mutex
	tokens    map[string]string
	refreshes int64 // refreshes answered with a token
	failed    int64 // refreshes refused or unanswered (faults)
}

func newSessions(client *issuerClient, users []string) *sessions {
	return &sessions{client: client, users: users, tokens: map[string]string{}}
}

func (s *sessions) token(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[user]
}

func (s *sessions) setToken(user, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[user] = token
}

// loginAll logs every user in (POST /login), retrying for up to a minute.
func (s *sessions) loginAll(ctx context.Context) error {
	for _, u := range s.users {
		var err error
		for deadline := time.Now().Add(time.Minute); ; {
			var tok string
			if tok, _, err = s.client.login(ctx, u); err == nil {
				s.setToken(u, tok)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("log %s in at the reference issuer: %w", u, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// run refreshes a random user's token every 20 ms until ctx ends, one in
// five forced (?force=true, within the issuer's per-user limit); a refused
// token logs the user in again.
func (s *sessions) run(ctx context.Context, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for ctx.Err() == nil {
		u := s.users[rng.IntN(len(s.users))]
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tok, _, err := s.client.refresh(rctx, s.token(u), rng.IntN(5) == 0)
		if errors.Is(err, errUnauthorized) {
			tok, _, err = s.client.login(rctx, u)
		}
		cancel()
		s.mu.Lock()
		if err == nil {
			s.tokens[u] = tok
			s.refreshes++
		} else if ctx.Err() == nil {
			s.failed++
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *sessions) counts() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes, s.failed
}

// verifyRefreshes: after the run, no refresh at the reference issuer
// returns data older than the last committed change: each session user's
// refreshed token (from the issuer's cache, no force) carries the user's
// document as MongoDB has it now. The notices of the last changes may
// still be on their way, so the first round may take up to 15 s; a notice
// lost for good leaves a cached copy stale for ever. Then every user is
// refreshed once more, and every one must be current.
func (h *harness) verifyRefreshes(ctx context.Context, s *sessions) error {
	round := func() ([]string, error) {
		var stale []string
		for _, u := range s.users {
			var doc bson.Raw
			err := h.coll.FindOne(ctx, bson.D{{Key: userIDField, Value: u}}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
			var want []byte
			switch {
			case errors.Is(err, mongo.ErrNoDocuments):
			case err != nil:
				return nil, fmt.Errorf("read %s: %w", u, err)
			default:
				if want, err = bson.MarshalExtJSON(doc, false, false); err != nil {
					return nil, err
				}
			}
			tok, got, err := s.client.refresh(ctx, s.token(u), false)
			if err != nil {
				stale = append(stale, u+": "+err.Error())
				continue
			}
			s.setToken(u, tok)
			if !sameJSON(got, want) {
				stale = append(stale, fmt.Sprintf("%s: token has %s, MongoDB %s", u, got, want))
			}
		}
		sort.Strings(stale)
		return stale, nil
	}
	// An issuer that does not follow notices reads MongoDB for every
	// refresh and would pass vacuously: the rounds count only while it
	// says it follows.
	if err := s.client.waitFollowing(ctx, 30*time.Second); err != nil {
		return err
	}
	var stale []string
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		if stale, err = round(); err != nil {
			return err
		}
		if len(stale) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(stale) == 0 {
		if stale, err = round(); err != nil {
			return err
		}
	}
	if err := s.client.waitFollowing(ctx, 0); err != nil {
		return fmt.Errorf("%w (during the refresh check)", err)
	}
	if len(stale) > 0 {
		return fmt.Errorf("reference issuer: %d of %d refreshes after the run do not carry the document MongoDB has, e.g. %s",
			len(stale), len(s.users), strings.Join(stale[:min(3, len(stale))], "; "))
	}
	return nil
}
