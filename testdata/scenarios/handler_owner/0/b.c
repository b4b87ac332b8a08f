/* b, version 0 (see main.c): its functions are registered by main and r,
 * which own those handlers */
#include <stdio.h>

void b_greet(void) { printf("after: b_greet (b v0)\n"); }

void b_bye(void) { printf("after: b_bye (b v0)\n"); }

int b_value(void) { return 0; }
