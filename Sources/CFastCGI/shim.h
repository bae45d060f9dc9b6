#ifndef C_FASTCGI_SHIM_H
#define C_FASTCGI_SHIM_H

// Only the reentrant FCGX_* API. fcgi_stdio.h is deliberately absent: it replaces stdio with macros that Swift
// does not import, so `print` and stdin would silently bypass FastCGI.
#include <fcgiapp.h>

#endif
