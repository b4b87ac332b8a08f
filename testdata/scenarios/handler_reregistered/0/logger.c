/* logger (see main.c): its function is registered by reg */
#include <stdio.h>

void log_reload(void) { printf("after: log_reload\n"); }
