// lib, version 0 (see main.c)
#include <cstdio>

static int compute(int v) { return v; }

int old_dyn = compute(42);

extern "C" void lib_show(void) { std::printf("v0 old_dyn=%d\n", old_dyn); }
