/* a, initial version (nimhcr_0.nim): let g_0 = 1000 */
int g_0 = 1000;

int getInt(void) { return g_0; }
