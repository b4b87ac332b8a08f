/* a, version 0 (see main.c): defines movable and moved_var */
int moved_var = 1;

int movable(void) { return 100 + moved_var; }

int a_value(void) { return 0; }
