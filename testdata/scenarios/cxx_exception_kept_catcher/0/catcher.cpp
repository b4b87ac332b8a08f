// catcher (see main.c): never changes; catches what thrower throws
#include <cstdio>
#include <exception>
int thrower(int x);
extern "C" int safe(int x)
{
    try {
        return thrower(x);
    } catch (const std::exception &e) {
        std::printf("caught: %s\n", e.what());
        return -1;
    }
}
