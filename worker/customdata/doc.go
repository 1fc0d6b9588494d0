// Package customdata is the custom-data collection as the worker sees it:
// one document per user, keyed by a user-id field and protected by a
// unique index (EnsureUserIndex, kept in place by Guard); Writer applies
// trigger writes to it, and says of each failed write whose fault it is
// (Fault: Outage, Retry or Permanent), which decides what happens to the
// events behind it.
package customdata
