// activation.glsl: the gated-MLP activations and their derivatives in f32.
// ACT selects one: ACT_SWIGLU (silu), ACT_GEGLU (erf GELU), ACT_GEGLU_TANH
// (tanh GELU, Gemma's gelu_pytorch_tanh). Formulas: docs/LORA-MATH.md.
#define ACT_SWIGLU 1
#define ACT_GEGLU 2
#define ACT_GEGLU_TANH 3

const float SQRT_HALF = 0.70710678118654752;
const float INV_SQRT_2PI = 0.3989422804014327;
const float SQRT_2_OVER_PI = 0.7978845608028654;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): GLSL has no erf.
float erf_approx(float x) {
	float ax = abs(x);
	float t = 1.0 / (1.0 + 0.3275911 * ax);
	float y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-ax * ax);
	return sign(x) * y;
}

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// tanh with the argument clamped: some drivers return NaN for large |u|.
float tanh_safe(float u) { return tanh(clamp(u, -15.0, 15.0)); }

float act_f(float e) {
#if ACT == ACT_SWIGLU
	return e * sigmoid(e);
#elif ACT == ACT_GEGLU
	return 0.5 * e * (1.0 + erf_approx(e * SQRT_HALF));
#else
	float u = SQRT_2_OVER_PI * (e + 0.044715 * e * e * e);
	return 0.5 * e * (1.0 + tanh_safe(u));
#endif
}

float act_grad(float e) {
#if ACT == ACT_SWIGLU
	float s = sigmoid(e);
	return s * (1.0 + e * (1.0 - s));
#elif ACT == ACT_GEGLU
	return 0.5 * (1.0 + erf_approx(e * SQRT_HALF)) + e * exp(-0.5 * e * e) * INV_SQRT_2PI;
#else
	float u = SQRT_2_OVER_PI * (e + 0.044715 * e * e * e);
	float th = tanh_safe(u);
	return 0.5 * (1.0 + th) + 0.5 * e * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * e * e);
#endif
}
