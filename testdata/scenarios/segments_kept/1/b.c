/* b, version 1 (see main.c): new code, same references into a */
extern const int a_table[3];
int a_count(void);
int b_sum(void) { return 10 * (a_table[0] + a_table[1] + a_table[2]); }
int (*const b_ops[1])(void) = {a_count};
int b_call(void) { return 100 + b_ops[0](); }
