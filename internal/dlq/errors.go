package dlq

import "errors"

var (
	// ErrNotFound: no dead letter has that sequence.
	ErrNotFound = errors.New("no dead letter with that sequence")
	// ErrTruncated: the dead letter's body was cut to fit, so the event
	// cannot be sent again as it was.
	ErrTruncated = errors.New("the dead letter's body was truncated; the event cannot be redriven")
	// ErrSignedInWindow: a signed event's redrive was a duplicate, within
	// the auth stream's duplicate window, of a message with its signed
	// id; the dead letter is kept.
	ErrSignedInWindow = errors.New("signed event redriven inside the duplicate window")
	// ErrReplay: a signed event dead-lettered as msg_id_not_signed is a
	// copy of one already published under its signed id; redriving it
	// would carry the replay out. Purge it.
	ErrReplay = errors.New("the dead letter is a replay of a signed event under another Nats-Msg-Id (msg_id_not_signed): redriving it would apply it again; purge it")
	// ErrNoOriginalSubject: the dead letter does not say where the event
	// came from.
	ErrNoOriginalSubject = errors.New("the dead letter has no Dlq-Original-Subject")
	// ErrNoSelection: redrive and purge need sequences, a reason or All.
	ErrNoSelection = errors.New("select dead letters by sequence, by reason, or all of them")
)
