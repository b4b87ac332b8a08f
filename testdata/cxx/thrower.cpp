#include <stdexcept>
#include <string>
#include <cstdio>
struct Shape { virtual ~Shape() {} virtual int area() const = 0; };
struct Square : Shape { int s; Square(int s) : s(s) {} int area() const override { return s * s; } };
inline int shared_inline(int x) { static int calls = 0; return x + (++calls); }
struct Announcer { Announcer() { std::puts("thrower: static constructor"); } ~Announcer() { std::puts("thrower: static destructor"); } };
static Announcer announcer;
Shape *make_square(int s) { return new Square(s); }
int thrower_inline(int x) { return shared_inline(x); }
void throw_it(int x) {
  if (x > 2) throw std::runtime_error("too big: " + std::to_string(x));
}
