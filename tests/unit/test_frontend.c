#include "tests/unit/harness.h"
int main(void) { return ts_test_finish(); }
