#include <stdexcept>
#include <cstdio>
struct Shape { virtual ~Shape() {} virtual int area() const = 0; };
Shape *make_square(int s);
void throw_it(int x);
int thrower_inline(int x);
inline int shared_inline(int x) { static int calls = 0; return x + (++calls); }
int main() {
  Shape *s = make_square(7);
  std::printf("area %d\n", s->area());
  delete s;
  std::printf("inline %d %d\n", shared_inline(10), thrower_inline(10));
  for (int i = 1; i <= 4; i++) {
    try { throw_it(i); std::printf("ok %d\n", i); }
    catch (const std::exception &e) { std::printf("caught: %s\n", e.what()); }
  }
  return 0;
}
