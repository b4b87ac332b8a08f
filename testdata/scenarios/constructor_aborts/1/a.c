/* module a, version 1: imports the new module b. */
int b_value(void);
int a_value(void) { return 10 + b_value(); }
