/* The engine's tensor view is the public one (plugins see the same struct). */
#ifndef HYD_ENGINE_TENSOR_H
#define HYD_ENGINE_TENSOR_H

#include "hyd/tensor.h"

#endif
