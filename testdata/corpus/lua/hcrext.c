/* A Lua C extension module, built as a normal shared object
 * (`cc -shared -fPIC`) and loaded by `require "hcrext"` with dlopen. It does
 * not link liblua: its lua_* references resolve against the program that
 * loads it (an executable linked with -Wl,-E, or an hcr image). */
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

static int twice(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_pushinteger(L, 2 * n);
  return 1;
}

static int join(lua_State *L) {
  luaL_Buffer b;
  int n = lua_gettop(L);
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '+');
    luaL_addstring(&b, luaL_checkstring(L, i));
  }
  luaL_pushresult(&b);
  return 1;
}

static int sleep_ms(lua_State *L) {
  usleep((useconds_t)luaL_checkinteger(L, 1) * 1000);
  return 0;
}

static const luaL_Reg funcs[] = {
    {"twice", twice}, {"join", join}, {"sleep_ms", sleep_ms}, {NULL, NULL}};

int luaopen_hcrext(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
