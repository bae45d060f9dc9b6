/* The smallest CGI program, linked statically: the cold-start floor. */
#include <stdio.h>
int main(void) { fputs("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{}", stdout); return 0; }
