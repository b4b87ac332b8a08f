/* b, version 0 (see main.c): b_greet is registered by main, owned by b */
#include <stdio.h>

void b_greet(void) { printf("after: b_greet (b v0)\n"); }

int b_value(void) { return 0; }
