/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The test guest's entry and its few ring-0 paths, kept short because ring 0
 * is emulated under PVM: the 64-bit Linux entry (rsi = boot_params), the
 * GDT (selectors match the boot GDT, so nothing is reloaded), static
 * identity page tables with the user bit (so ring 3 reaches everything),
 * exception and timer entries, the syscall entry, and the way into ring 3.
 * No `int N` anywhere: PVM's emulator does not implement it.
 */
    .section .text.start, "ax"
    .code64
    .globl _start
_start:
    /* First instruction: a port write, so the VMM sees the guest running. */
    mov $0x80, %dx
    out %al, %dx
    mov %rsi, boot_params_ptr(%rip)
    lea boot_stack_top(%rip), %rsp
    lgdt gdt_desc(%rip)
    lea pml4(%rip), %rax
    .globl pml4
    mov %rax, %cr3
    call kmain
1:  hlt
    jmp 1b

/* enter_user(rip, rsp): iretq to ring 3 with interrupts on. */
    .globl enter_user
enter_user:
    pushq $0x2b
    pushq %rsi
    pushq $0x202
    pushq $0x33
    pushq %rdi
    iretq

/*
 * System calls are `ud2` from ring 3: rax = number, rdi/rsi/rdx = arguments,
 * result in rax.  Not the syscall instruction: under PVM its handler does
 * not run with ring-0 privileges (port I/O there faults with CS still 0x33),
 * while an exception delivered through the IDT does.  A #UD from ring 0 is
 * a real one and is reported.
 */
    .globl ud_entry
ud_entry:
    testb $3, 8(%rsp)          /* CS of the interrupted code */
    jz exc_6
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rdx, %rcx
    mov %rsi, %rdx
    mov %rdi, %rsi
    mov %rax, %rdi
    call k_syscall
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    addq $2, (%rsp)            /* skip the ud2 */
    iretq

/* LAPIC timer (x2APIC): count the tick, EOI, return. */
    .globl timer_entry
timer_entry:
    push %rax
    push %rcx
    push %rdx
    lock incq ticks(%rip)
    xor %eax, %eax
    xor %edx, %edx
    mov $0x80b, %ecx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .globl spurious_entry
spurious_entry:
    iretq

/* Exceptions: push a vector (and a dummy error code where the CPU pushes
 * none), then report and power off. */
.macro EXC vec, has_err
    .globl exc_\vec
exc_\vec:
    .if \has_err == 0
    pushq $0
    .endif
    pushq $\vec
    jmp exc_common
.endm
EXC 0,0
EXC 1,0
EXC 2,0
EXC 3,0
EXC 4,0
EXC 5,0
EXC 6,0
EXC 7,0
EXC 8,1
EXC 9,0
EXC 10,1
EXC 11,1
EXC 12,1
EXC 13,1
EXC 14,1
EXC 15,0
EXC 16,0
EXC 17,1
EXC 18,0
EXC 19,0
EXC 20,0
EXC 21,1

exc_common:
    mov %rsp, %rdi
    and $-16, %rsp
    call kexception
2:  hlt
    jmp 2b

/*
 * Application processor start-up, copied to 0x8000 (SIPI vector 8): real
 * mode -> protected mode -> long mode on the BSP's page tables, then mark
 * itself alive and halt.
 */
    .globl ap_tramp, ap_tramp_end
    .code16
ap_tramp:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (ap_gdt_desc - ap_tramp + 0x8000)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x48, $(ap32 - ap_tramp + 0x8000)
    .code32
ap32:
    mov $0x18, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmpl $0x10, $(ap64 - ap_tramp + 0x8000)
    .code64
ap64:
    movl $2, ap_alive
3:  cli
    hlt
    jmp 3b
    .align 8
ap_gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
ap_tramp_end:

    .section .rodata
    .globl exc_table
exc_table:
    .quad exc_0, exc_1, exc_2, exc_3, exc_4, exc_5, exc_6, exc_7
    .quad exc_8, exc_9, exc_10, exc_11, exc_12, exc_13, exc_14, exc_15
    .quad exc_16, exc_17, exc_18, exc_19, exc_20, exc_21

    .data
    .align 16
    .globl gdt
gdt:
    .quad 0
    .quad 0
    .quad 0x00af9b000000ffff /* 0x10 kernel code 64 */
    .quad 0x00cf93000000ffff /* 0x18 kernel data */
    .quad 0x00cffb000000ffff /* 0x20 user code 32 (sysret base, unused) */
    .quad 0x00cff3000000ffff /* 0x28 user data */
    .quad 0x00affb000000ffff /* 0x30 user code 64 */
    .quad 0, 0               /* 0x38 TSS, filled by kmain */
    .quad 0x00cf9a000000ffff /* 0x48 kernel code 32 (AP start-up) */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .data.pagetables, "aw"
    .align 4096
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x7
    .quad pd + 0x1000 + 0x7
    .quad pd + 0x2000 + 0x7
    .quad pd + 0x3000 + 0x7
    .fill 508, 8, 0
pd:
    .set i, 0
    .rept 2048
    .quad (i << 21) | 0x87
    .set i, i + 1
    .endr

    .bss
    .align 16
    .globl boot_params_ptr
boot_params_ptr:
    .quad 0
    .globl ap_alive
ap_alive:
    .long 0
    .align 4096
    .space 16384
boot_stack_top:
    .section .note.GNU-stack, "", @progbits
