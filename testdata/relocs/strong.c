/* Overrides lib.c's weak definition. */
int weak_or_strong(void) { return 2; }
