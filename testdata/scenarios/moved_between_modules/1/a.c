/* a, version 1 (see main.c): movable and moved_var went to b */
int a_value(void) { return 1; }
