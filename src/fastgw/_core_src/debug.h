#ifndef FASTGW_DEBUG
#define FASTGW_DEBUG 0
#endif
