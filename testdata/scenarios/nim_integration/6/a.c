/* a, step 6 (nimhcr_0_5.nim): imports nothing, so b and c are unloaded. */
int getInt(void) { return 42; } /* back to the answer... */
