/* b, version 2 (nimhcr_1_2.nim): now imports c. */
int f_2(void); /* module c */

int f_1(void) { return f_2(); }
