/* a, version 1 (see main.c): legacy() is gone */
int replacement(int x) { return 2 * x; }

int (*a_hook)(int) = replacement; /* changed initialiser: no effect */

int a_version(void) { return 1; }
