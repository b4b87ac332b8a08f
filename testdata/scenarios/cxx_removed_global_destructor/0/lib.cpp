// lib, version 0 (see main.c)
#include <cstdio>
#include <vector>

struct Noisy {
    const char *name;
    ~Noisy() { std::printf("~Noisy(%s)\n", name); std::fflush(stdout); }
};

Noisy kept{"kept"};
Noisy gone{"gone"};
std::vector<int> gone_vec{1, 2, 3};

extern "C" void lib_show(void) { std::printf("v0 %s %s %zu\n", kept.name, gone.name, gone_vec.size()); }
