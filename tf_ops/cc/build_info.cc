// What the library was built against, as one string that Python finds in the file
// before loading it (keras_dcn/_build_info.py): loading a library built for another
// TensorFlow may fail with an unhelpful missing symbol, or not fail at all.
//
//   keras_dcn_build_info:tensorflow=2.20.0;cuda=0;march=default;cpu=sse3,...,avx,;
//
// `march` is the -march value requested instead of the default (KERAS_DCN_MARCH in
// setup.py, --config=native in Bazel); `cpu` lists the x86 extensions the compiler
// could use anywhere in the library. The AVX-512 micro-kernels of cpu_gemm.cc carry
// their own target attributes and run only where the CPU has AVX-512, so they are not
// listed.
//
// The build passes TensorFlow's version as -DKERAS_DCN_TF_VERSION=2.20.0 (setup.py, and
// tf_ops/BUILD from the local TensorFlow): TensorFlow's wheel headers leave it out.
#define KERAS_DCN_STRING_OF(x) #x
#define KERAS_DCN_STRING(x) KERAS_DCN_STRING_OF(x)

extern "C" __attribute__((used, visibility("default"))) const char keras_dcn_build_info[] =
    "keras_dcn_build_info:tensorflow="
#ifdef KERAS_DCN_TF_VERSION
    KERAS_DCN_STRING(KERAS_DCN_TF_VERSION)
#else
    "unknown"
#endif
#if GOOGLE_CUDA
    ";cuda=1"
#else
    ";cuda=0"
#endif
    ";march="
#ifdef KERAS_DCN_MARCH
    KERAS_DCN_STRING(KERAS_DCN_MARCH)
#else
    "default"
#endif
    ";cpu="
#ifdef __SSE3__
    "sse3,"
#endif
#ifdef __SSSE3__
    "ssse3,"
#endif
#ifdef __SSE4_1__
    "sse4.1,"
#endif
#ifdef __SSE4_2__
    "sse4.2,"
#endif
#ifdef __POPCNT__
    "popcnt,"
#endif
#ifdef __AVX__
    "avx,"
#endif
#ifdef __F16C__
    "f16c,"
#endif
#ifdef __FMA__
    "fma,"
#endif
#ifdef __AVX2__
    "avx2,"
#endif
#ifdef __BMI2__
    "bmi2,"
#endif
#ifdef __AVX512F__
    "avx512f,"
#endif
    ";";
