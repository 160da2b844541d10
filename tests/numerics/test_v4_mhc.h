/* test_v4_mhc.h - num_v4's mHC groups (test_v4_mhc.c). */
#ifndef TS_TEST_V4_MHC_H
#define TS_TEST_V4_MHC_H

void test_mhc_pre_random(void);     /* group "attn" */
void test_golden_sinkhorn(void);    /* group "golden_attn_mhc" */
void test_hc_head(void);            /* group "hc_head" */
void test_mhc_mix_tf32(void);       /* group "mhc_tf32" */
void test_hc_post_mix(void);        /* group "hc_post_mix" */
void test_hc_post_mix_last(void);   /* group "hc_post_mix_last" */
void test_golden_mhc_layer0(void);  /* group "golden_mhc_layer0" */

#endif
