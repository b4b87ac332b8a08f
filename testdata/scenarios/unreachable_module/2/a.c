/* a, version 2 (see main.c): imports orphan */
#include <stdio.h>

#include "hcr.h"

int orphan_value(void);

HCR_ON_RELOAD(a_on_reload) { printf("a: on_reload (v2)\n"); }

int a_value(void) { return 200 + orphan_value(); }
