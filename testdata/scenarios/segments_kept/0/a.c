/* a (see main.c): const data, a string literal, a counter */
const int a_table[3] = {1, 2, 3};
int a_calls;
int a_count(void) { return ++a_calls; }
const char *a_greeting(void) { return "hello from a"; }
