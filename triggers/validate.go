package triggers

// ValidateWrite checks field names and values of a Write; errors match ErrPermanent.
func ValidateWrite(w Write) error {
	return nil
}
