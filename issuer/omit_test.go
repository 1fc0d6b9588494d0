package issuer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// TestSourceOmitsFieldsTokensDoNotCarry: with lastLogin omitted, what an
// issuer reads (and caches, and puts in tokens) never holds it, so the
// worker's NOTICE_IGNORE_FIELDS=lastLogin cannot leave it stale.
func TestSourceOmitsFieldsTokensDoNotCarry(t *testing.T) {
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	if _, err := client.Database(db).Collection("profiles").InsertOne(ctx, bson.D{
		{Key: "uid", Value: "ada"}, {Key: "plan", Value: "pro"}, {Key: "lastLogin", Value: time.Now()}, {Key: "stats", Value: bson.D{{Key: "n", Value: 3}}},
	}); err != nil {
		t.Fatal(err)
	}
	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: db, Collection: "profiles", UserIDField: "uid",
		OmitFields: []string{"stats", "lastLogin", "stats"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := src.Get(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	js := string(d.JSON())
	if strings.Contains(js, "lastLogin") || strings.Contains(js, "stats") || !strings.Contains(js, `"plan":"pro"`) || d.DocumentID() == "" {
		t.Fatalf("read %s (document id %q); want plan and _id without lastLogin and stats", js, d.DocumentID())
	}
}

func TestSourceConfigRefusesOmittingWhatTheCacheNeeds(t *testing.T) {
	for _, f := range []string{"", "_id", "uid", "a.b", "$x"} {
		err := issuer.SourceConfig{UserIDField: "uid", OmitFields: []string{"plan", f}}.Validate()
		if err == nil {
			t.Errorf("OmitFields with %q accepted", f)
		}
	}
	if err := (issuer.SourceConfig{UserIDField: "uid", OmitFields: []string{"lastLogin"}}).Validate(); err != nil {
		t.Errorf("OmitFields lastLogin refused: %v", err)
	}
}
