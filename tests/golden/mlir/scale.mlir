module {
  func.func @scale__grid(%arg0: i64, %arg1: f32) -> (i64, i64, i64) {
    %c1_i64 = arith.constant 1 : i64
    %c1_i64_0 = arith.constant 1 : i64
    %c1_i64_1 = arith.constant 1 : i64
    %c4_i64 = arith.constant 4 : i64
    %0 = arith.ceildivsi %arg0, %c4_i64 : i64
    return %0, %c1_i64_0, %c1_i64_1 : i64, i64, i64
  }
  func.func @scale__scratch(%arg0: i64, %arg1: f32) -> i64 {
    %c0_i64 = arith.constant 0 : i64
    return %c0_i64 : i64
  }
  func.func private @scale__block(%arg0: memref<?xf32>, %arg1: memref<?xi16>, %arg2: i64, %arg3: f32, %arg4: i64, %arg5: i64, %arg6: i64) {
    %alloca = memref.alloca() : memref<4xf32>
    %c4_i64 = arith.constant 4 : i64
    %0 = arith.muli %arg4, %c4_i64 : i64
    %c0_i64 = arith.constant 0 : i64
    %c1_i64 = arith.constant 1 : i64
    %1 = arith.muli %arg2, %c1_i64 : i64
    %2 = arith.addi %c0_i64, %1 : i64
    %c4_i64_0 = arith.constant 4 : i64
    %3 = arith.addi %0, %c4_i64_0 : i64
    %4 = arith.subi %3, %0 : i64
    %c4_i64_1 = arith.constant 4 : i64
    %c4_i64_2 = arith.constant 4 : i64
    %c0_i64_3 = arith.constant 0 : i64
    %c0_i64_4 = arith.constant 0 : i64
    %c0_i64_5 = arith.constant 0 : i64
    %c0_i64_6 = arith.constant 0 : i64
    %true = arith.constant true
    %5 = arith.addi %0, %c0_i64_5 : i64
    %c0_i64_7 = arith.constant 0 : i64
    %6 = arith.cmpi sge, %5, %c0_i64_7 : i64
    %7 = arith.cmpi slt, %5, %2 : i64
    %8 = arith.muli %c0_i64_6, %2 : i64
    %9 = arith.addi %8, %5 : i64
    %10 = arith.subi %c0_i64_5, %0 : i64
    %11 = arith.maxsi %10, %c0_i64_5 : i64
    %12 = arith.minsi %11, %c4_i64_2 : i64
    %13 = arith.subi %2, %0 : i64
    %14 = arith.maxsi %13, %12 : i64
    %15 = arith.minsi %14, %c4_i64_2 : i64
    %16 = arith.select %true, %12, %c0_i64_5 : i64
    %17 = arith.select %true, %15, %c0_i64_5 : i64
    %c1_i64_8 = arith.constant 1 : i64
    cf.br ^bb1(%16 : i64)
  ^bb1(%18: i64):  // 2 preds: ^bb0, ^bb3
    %19 = arith.cmpi slt, %18, %17 : i64
    cf.cond_br %19, ^bb2, ^bb4
  ^bb2:  // pred: ^bb1
    %c0_i64_9 = arith.constant 0 : i64
    %true_10 = arith.constant true
    %20 = arith.addi %0, %18 : i64
    %c0_i64_11 = arith.constant 0 : i64
    %21 = arith.cmpi sge, %20, %c0_i64_11 : i64
    %22 = arith.cmpi slt, %20, %2 : i64
    %23 = arith.muli %c0_i64_9, %2 : i64
    %24 = arith.addi %23, %20 : i64
    %25 = arith.index_cast %24 : i64 to index
    %26 = memref.load %arg0[%25] : memref<?xf32>
    %c0_i64_12 = arith.constant 0 : i64
    %true_13 = arith.constant true
    %27 = arith.addi %c0_i64_3, %18 : i64
    %c0_i64_14 = arith.constant 0 : i64
    %28 = arith.cmpi sge, %27, %c0_i64_14 : i64
    %29 = arith.cmpi slt, %27, %c4_i64_2 : i64
    %30 = arith.muli %c0_i64_12, %c4_i64_2 : i64
    %31 = arith.addi %30, %27 : i64
    %32 = arith.index_cast %31 : i64 to index
    memref.store %26, %alloca[%32] : memref<4xf32>
    cf.br ^bb3
  ^bb3:  // pred: ^bb2
    %33 = arith.addi %18, %c1_i64_8 : i64
    cf.br ^bb1(%33 : i64)
  ^bb4:  // pred: ^bb1
    %cst = arith.constant 0.000000e+00 : f32
    %c1_i64_15 = arith.constant 1 : i64
    cf.br ^bb5(%c0_i64_4 : i64)
  ^bb5(%34: i64):  // 2 preds: ^bb4, ^bb7
    %35 = arith.cmpi slt, %34, %16 : i64
    cf.cond_br %35, ^bb6, ^bb8
  ^bb6:  // pred: ^bb5
    %c0_i64_16 = arith.constant 0 : i64
    %true_17 = arith.constant true
    %36 = arith.addi %c0_i64_3, %34 : i64
    %c0_i64_18 = arith.constant 0 : i64
    %37 = arith.cmpi sge, %36, %c0_i64_18 : i64
    %38 = arith.cmpi slt, %36, %c4_i64_2 : i64
    %39 = arith.muli %c0_i64_16, %c4_i64_2 : i64
    %40 = arith.addi %39, %36 : i64
    %41 = arith.index_cast %40 : i64 to index
    memref.store %cst, %alloca[%41] : memref<4xf32>
    cf.br ^bb7
  ^bb7:  // pred: ^bb6
    %42 = arith.addi %34, %c1_i64_15 : i64
    cf.br ^bb5(%42 : i64)
  ^bb8:  // pred: ^bb5
    %c1_i64_19 = arith.constant 1 : i64
    cf.br ^bb9(%17 : i64)
  ^bb9(%43: i64):  // 2 preds: ^bb8, ^bb11
    %44 = arith.cmpi slt, %43, %c4_i64_2 : i64
    cf.cond_br %44, ^bb10, ^bb12
  ^bb10:  // pred: ^bb9
    %c0_i64_20 = arith.constant 0 : i64
    %true_21 = arith.constant true
    %45 = arith.addi %c0_i64_3, %43 : i64
    %c0_i64_22 = arith.constant 0 : i64
    %46 = arith.cmpi sge, %45, %c0_i64_22 : i64
    %47 = arith.cmpi slt, %45, %c4_i64_2 : i64
    %48 = arith.muli %c0_i64_20, %c4_i64_2 : i64
    %49 = arith.addi %48, %45 : i64
    %50 = arith.index_cast %49 : i64 to index
    memref.store %cst, %alloca[%50] : memref<4xf32>
    cf.br ^bb11
  ^bb11:  // pred: ^bb10
    %51 = arith.addi %43, %c1_i64_19 : i64
    cf.br ^bb9(%51 : i64)
  ^bb12:  // pred: ^bb9
    %c4_i64_23 = arith.constant 4 : i64
    %c0_i64_24 = arith.constant 0 : i64
    %c1_i64_25 = arith.constant 1 : i64
    cf.br ^bb13(%c0_i64_24 : i64)
  ^bb13(%52: i64):  // 2 preds: ^bb12, ^bb15
    %53 = arith.cmpi slt, %52, %c4_i64_23 : i64
    cf.cond_br %53, ^bb14, ^bb16
  ^bb14:  // pred: ^bb13
    %c0_i64_26 = arith.constant 0 : i64
    %c4_i64_27 = arith.constant 4 : i64
    %c0_i64_28 = arith.constant 0 : i64
    %true_29 = arith.constant true
    %c0_i64_30 = arith.constant 0 : i64
    %54 = arith.cmpi sge, %52, %c0_i64_30 : i64
    %55 = arith.cmpi slt, %52, %c4_i64_27 : i64
    %56 = arith.muli %c0_i64_28, %c4_i64_27 : i64
    %57 = arith.addi %56, %52 : i64
    %58 = arith.index_cast %57 : i64 to index
    %59 = memref.load %alloca[%58] : memref<4xf32>
    %60 = arith.mulf %59, %arg3 : f32
    %c4_i64_31 = arith.constant 4 : i64
    %c0_i64_32 = arith.constant 0 : i64
    %true_33 = arith.constant true
    %c0_i64_34 = arith.constant 0 : i64
    %61 = arith.cmpi sge, %52, %c0_i64_34 : i64
    %62 = arith.cmpi slt, %52, %c4_i64_31 : i64
    %63 = arith.muli %c0_i64_32, %c4_i64_31 : i64
    %64 = arith.addi %63, %52 : i64
    %65 = arith.index_cast %64 : i64 to index
    memref.store %60, %alloca[%65] : memref<4xf32>
    cf.br ^bb15
  ^bb15:  // pred: ^bb14
    %66 = arith.addi %52, %c1_i64_25 : i64
    cf.br ^bb13(%66 : i64)
  ^bb16:  // pred: ^bb13
    %c4_i64_35 = arith.constant 4 : i64
    %c0_i64_36 = arith.constant 0 : i64
    %c0_i64_37 = arith.constant 0 : i64
    %c1_i64_38 = arith.constant 1 : i64
    %67 = arith.muli %arg2, %c1_i64_38 : i64
    %68 = arith.addi %c0_i64_37, %67 : i64
    %c4_i64_39 = arith.constant 4 : i64
    %69 = arith.addi %0, %c4_i64_39 : i64
    %70 = arith.subi %69, %0 : i64
    %c4_i64_40 = arith.constant 4 : i64
    %c0_i64_41 = arith.constant 0 : i64
    %c0_i64_42 = arith.constant 0 : i64
    %c0_i64_43 = arith.constant 0 : i64
    %true_44 = arith.constant true
    %71 = arith.addi %0, %c0_i64_42 : i64
    %c0_i64_45 = arith.constant 0 : i64
    %72 = arith.cmpi sge, %71, %c0_i64_45 : i64
    %73 = arith.cmpi slt, %71, %68 : i64
    %74 = arith.muli %c0_i64_43, %68 : i64
    %75 = arith.addi %74, %71 : i64
    %76 = arith.subi %c0_i64_42, %0 : i64
    %77 = arith.maxsi %76, %c0_i64_42 : i64
    %78 = arith.minsi %77, %c4_i64_40 : i64
    %79 = arith.subi %68, %0 : i64
    %80 = arith.maxsi %79, %78 : i64
    %81 = arith.minsi %80, %c4_i64_40 : i64
    %82 = arith.select %true_44, %78, %c0_i64_42 : i64
    %83 = arith.select %true_44, %81, %c0_i64_42 : i64
    %c1_i64_46 = arith.constant 1 : i64
    cf.br ^bb17(%82 : i64)
  ^bb17(%84: i64):  // 2 preds: ^bb16, ^bb19
    %85 = arith.cmpi slt, %84, %83 : i64
    cf.cond_br %85, ^bb18, ^bb20
  ^bb18:  // pred: ^bb17
    %c0_i64_47 = arith.constant 0 : i64
    %true_48 = arith.constant true
    %86 = arith.addi %c0_i64_36, %84 : i64
    %c0_i64_49 = arith.constant 0 : i64
    %87 = arith.cmpi sge, %86, %c0_i64_49 : i64
    %88 = arith.cmpi slt, %86, %c4_i64_35 : i64
    %89 = arith.muli %c0_i64_47, %c4_i64_35 : i64
    %90 = arith.addi %89, %86 : i64
    %91 = arith.index_cast %90 : i64 to index
    %92 = memref.load %alloca[%91] : memref<4xf32>
    %c0_i64_50 = arith.constant 0 : i64
    %true_51 = arith.constant true
    %93 = arith.addi %0, %84 : i64
    %c0_i64_52 = arith.constant 0 : i64
    %94 = arith.cmpi sge, %93, %c0_i64_52 : i64
    %95 = arith.cmpi slt, %93, %68 : i64
    %96 = arith.muli %c0_i64_50, %68 : i64
    %97 = arith.addi %96, %93 : i64
    %98 = arith.bitcast %92 : f32 to i32
    %c16_i32 = arith.constant 16 : i32
    %99 = arith.shrui %98, %c16_i32 : i32
    %c1_i32 = arith.constant 1 : i32
    %100 = arith.andi %99, %c1_i32 : i32
    %c32767_i32 = arith.constant 32767 : i32
    %101 = arith.addi %100, %c32767_i32 : i32
    %102 = arith.addi %98, %101 : i32
    %103 = arith.shrui %102, %c16_i32 : i32
    %c64_i32 = arith.constant 64 : i32
    %104 = arith.ori %99, %c64_i32 : i32
    %105 = arith.cmpf uno, %92, %92 : f32
    %106 = arith.select %105, %104, %103 : i32
    %107 = arith.trunci %106 : i32 to i16
    %108 = arith.index_cast %97 : i64 to index
    memref.store %107, %arg1[%108] : memref<?xi16>
    cf.br ^bb19
  ^bb19:  // pred: ^bb18
    %109 = arith.addi %84, %c1_i64_46 : i64
    cf.br ^bb17(%109 : i64)
  ^bb20:  // pred: ^bb17
    return
  }
  func.func @scale(%arg0: memref<?xf32>, %arg1: memref<?xi16>, %arg2: i64, %arg3: f32, %arg4: i64, %arg5: i64) {
    %0:3 = call @scale__grid(%arg2, %arg3) : (i64, f32) -> (i64, i64, i64)
    %c1_i64 = arith.constant 1 : i64
    cf.br ^bb1(%arg4 : i64)
  ^bb1(%1: i64):  // 2 preds: ^bb0, ^bb3
    %2 = arith.cmpi slt, %1, %arg5 : i64
    cf.cond_br %2, ^bb2, ^bb4
  ^bb2:  // pred: ^bb1
    %3 = arith.divsi %1, %0#0 : i64
    %4 = arith.remsi %1, %0#0 : i64
    %5 = arith.remsi %3, %0#1 : i64
    %6 = arith.divsi %3, %0#1 : i64
    call @scale__block(%arg0, %arg1, %arg2, %arg3, %4, %5, %6) : (memref<?xf32>, memref<?xi16>, i64, f32, i64, i64, i64) -> ()
    cf.br ^bb3
  ^bb3:  // pred: ^bb2
    %7 = arith.addi %1, %c1_i64 : i64
    cf.br ^bb1(%7 : i64)
  ^bb4:  // pred: ^bb1
    return
  }
}

