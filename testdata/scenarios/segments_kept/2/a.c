/* a, version 2 (see main.c): new const data and a new literal */
const int a_table[3] = {4, 5, 6};
int a_calls;
int a_count(void) { return ++a_calls; }
const char *a_greeting(void) { return "hello again from a"; }
