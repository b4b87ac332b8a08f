/* b, version 2 (see main.c): b_greet is registered by main, owned by b */
#include <stdio.h>

void b_greet(void) { printf("after: b_greet (b v2)\n"); }

int b_value(void) { return 2; }
