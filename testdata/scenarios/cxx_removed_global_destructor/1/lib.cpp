// lib, version 1 (see main.c): gone and gone_vec removed
#include <cstdio>

struct Noisy {
    const char *name;
    ~Noisy() { std::printf("~Noisy(%s)\n", name); std::fflush(stdout); }
};

Noisy kept{"kept"};

extern "C" void lib_show(void) { std::printf("v1 %s\n", kept.name); }
