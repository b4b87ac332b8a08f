/* b, version 1 (see main.c): movable and moved_var come from a */
int moved_var = 1;

int movable(void) { return 200 + moved_var; }

int b_value(void) { return 1; }
