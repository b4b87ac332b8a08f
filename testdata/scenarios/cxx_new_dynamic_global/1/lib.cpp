// lib, version 1 (see main.c)
#include <cstdio>

static int compute(int v) { return v; }

int old_dyn = compute(43);
int new_dyn = compute(7);

extern "C" void lib_show(void) { std::printf("v1 old_dyn=%d new_dyn=%d\n", old_dyn, new_dyn); }
