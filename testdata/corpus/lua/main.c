/* Runs a Lua script with the standard libraries: what lua.c does for
 * `lua script.lua ARGS`, without the interactive parts. */
#include <stdio.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  if (luaL_dofile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    rc = 1;
  }
  lua_close(L);
  return rc;
}
