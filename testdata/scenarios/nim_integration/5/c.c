/* c, version 2 (nimhcr_2_2.nim) */
#include <stdio.h>

#include "hcr.h"

int f_2(void) { return 1; }

static void c_after(void) { printf("   2: after!\n"); }

HCR_ON_RELOAD(c_handlers) { hcr_on_after_reload(c_after); }
